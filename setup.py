"""Packaging metadata for txsio (tool settings live in pyproject.toml)."""

from setuptools import find_packages, setup

setup(
    name="txsio",
    version="0.1.0.dev0",
    description="Socket.IO and Engine.IO for Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # twisted/plugins is a namespace directory with no __init__.py (Twisted skips a plugin
    # directory that is a package), so find_packages cannot see it: list it by hand.
    packages=find_packages(include=["txsio", "txsio.*"]) + ["twisted.plugins"],
    package_data={"txsio": ["py.typed"], "txsio.demo": ["*.html", "*.css", "*.js", "*.svg"]},
    install_requires=[
        "twisted>=24.7.0",
        "autobahn>=24.4.2",
        "treq>=24.9.1",
        # the client's URLs (also a dependency of Twisted's)
        "hyperlink>=21.0.0",
        # the Redis adapter's wire format (Node's @socket.io/redis-adapter)
        "msgpack>=1.0",
        # the Redis adapter's RESP reader for its subscribed connection (C, incremental)
        "hiredis>=3.0",
        # io.metrics_resource() and twistd sio --metrics: the Prometheus exposition formats
        "prometheus_client>=0.20",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            "python-engineio>=4.9",
            "python-socketio[client]>=5.11",
            # python-socketio's server on aiohttp, a peer of the client's interop tests
            "aiohttp>=3.9",
            "requests>=2.31",
            "websocket-client>=1.7",
            "mypy>=1.10",
            "mypy-zope>=1.0.5",
            "ruff>=0.5",
            # tests/test_tap.py runs twistd sio on an ssl: endpoint
            "twisted[tls]>=24.7.0",
            # tests/test_admin.py: the admin UI's basic authentication
            "bcrypt>=4.0",
            # tests/test_docs.py runs docs/deployment.rst's Klein example, parses the docs
            "klein>=23.5.0",
            "types-docutils",
        ],
        "docs": ["sphinx>=7"],
        # bench/run.py: python-socketio on uvicorn as the Python peer, py-spy for --profile
        "bench": ["uvicorn>=0.30", "python-socketio>=5.11", "py-spy>=0.3"],
        # ssl: endpoints (twistd sio --port ssl:8443:privateKey=...) need pyOpenSSL
        "tls": ["twisted[tls]>=24.7.0"],
        # txsio.admin's basic authentication checks bcrypt hashes, as @socket.io/admin-ui
        "admin": ["bcrypt>=4.0"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
    ],
)
