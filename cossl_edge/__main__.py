"""`python -m cossl_edge …` (what `torchrun -m cossl_edge pretrain …` runs)."""

from cossl_edge.cli import main

if __name__ == "__main__":
    main()
