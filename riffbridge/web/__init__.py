"""riffbridge's face in the browser: a page that shows what plays and plays it (docs/web.md).

``server.WebServer`` serves it (Starlette on uvicorn, on a thread of its own); ``face.Face``
gathers what it shows from the hub, the engine's news and the engine's snapshot; ``protocol`` is
the pure JSON translation, routed like OSC; ``spectro`` draws a loop's picture from its audio.
"""
