"""``python -m aptnn.cli_post`` runs ``aptnn-post`` (for environments without the console script)."""
from aptnn.cli import post

if __name__ == "__main__":
    post()
