"""`python -m gptsovits_train` runs the same CLI as `gsv-train` (also under torchrun)."""

from gptsovits_train.cli import main

if __name__ == "__main__":
    main()
