"""The SQLite writer process's entry point (writer_process.py starts it)."""

import sys

from capigate.store.sqlite.writer_process import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
