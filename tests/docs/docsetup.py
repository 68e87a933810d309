"""Set-up functions that markers name (``setup=NAME``, ``then=NAME``): what
a page's example needs and the page itself does not show. Each takes the
PageRun. Keep them few and small, and say in each why the page does not
show it."""
