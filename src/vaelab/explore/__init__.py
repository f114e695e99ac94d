"""``vaelab explore RUN``: a local web page to look around a trained model's latent space.

The model side (:mod:`vaelab.explore.explorer`) opens the run and decodes latent vectors; the
HTTP server (:mod:`vaelab.explore.server`) answers the page with it; the page (``static/``,
plain HTML and JavaScript: dots on a canvas, axes, ellipses and draws in SVG above it; no
build step) draws the map.
"""

from .explorer import Explorer
from .server import make_server, serve

__all__ = ["Explorer", "make_server", "serve"]
