"""``python -m aptnn.cli_post`` runs ``aptnn-post`` (for environments without the console script, and torchrun)."""
from aptnn.cli import post_alias

if __name__ == "__main__":
    post_alias()
