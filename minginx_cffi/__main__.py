"""python -m minginx_cffi: the same as the minginx-cffi command."""

from .cli import main

main()
