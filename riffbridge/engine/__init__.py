"""The live engine: planner, render worker, loop cache, clock and player, wired by ``Engine``.

Data flows one way: the control hub's state -> the planner's render requests -> the render
worker process -> the loop cache -> prepared buffers -> the audio callback and the file writer.
"""
