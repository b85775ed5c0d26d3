"""The jobs users run: baseline, optimize, batch, leaderboard."""
