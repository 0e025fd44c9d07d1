"""The node's web front: server-rendered pages for members, admins and the public.

Pages are Jinja templates rendered by litestar, with a little plain JavaScript
that only enhances them (every page reads and every form posts without it).
"""
