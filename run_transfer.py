#!/usr/bin/env python
"""Entry point: ``python run_transfer.py BENCH --checkpoint PATH ...`` (see transfer/cli.py)."""
import sys

from transfer.cli import main

if __name__ == '__main__':
    sys.exit(main())
