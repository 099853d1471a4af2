"""The REST front: aiohttp routes that serve every dialect through its adapter (``dialects``),
body reading with limits (``body``) and the operational endpoints (``ops``)."""
