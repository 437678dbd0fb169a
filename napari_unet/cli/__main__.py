import sys

from . import main

if __name__ == "__main__":  # dask's worker processes import the main module again; they must not rerun it
    sys.exit(main())
