"""sessionstore: an HTTP session store on Redis, speaking the LivePerson,
Emporix and Genesys session APIs and a native one over one storage core."""

__version__ = "0.1.0"
