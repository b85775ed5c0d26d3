"""Reference candidates, one self-contained file per benchmark (a candidate may import no harness code)."""
