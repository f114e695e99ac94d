"""``vaelab explore RUN``: a local web page to look around a trained model's latent space.

The server (:mod:`vaelab.explore.server`) decodes latent vectors with the trained model; the
page (``static/``, plain HTML and JavaScript on a canvas, no build step) draws the map.
"""

from .server import Explorer, make_server, serve

__all__ = ["Explorer", "make_server", "serve"]
