"""Every template family, registered by importing its module here (discover by import)."""
