"""Captioning at scale: many photos on a Ray cluster (``imgsum caption --engine ray``, :func:`caption_on_ray`).

Needs the ``scale`` extra (``pip install 'imgsum[scale]'``: Ray Data and pyarrow); importing this package is
cheap and imports neither: ``ray_caption`` does.
"""
