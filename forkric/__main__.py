"""`python -m forkric [options] [HANDLER]`: what a Lambda container runs as its runtime."""

from forkric.cli import run_main

if __name__ == "__main__":
    run_main()
