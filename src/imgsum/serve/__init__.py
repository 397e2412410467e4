"""The local web app and REST API: ``imgsum serve``, or ``create_app(Settings(...))`` for programs and tests.

Importing this package is cheap: FastAPI, uvicorn and the models are imported only by ``app`` and ``cli.run``.
"""
