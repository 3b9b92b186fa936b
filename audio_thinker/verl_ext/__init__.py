"""Everything that plugs audio-thinker into verl through verl's own extension points.

Nothing here edits or copies verl's files or its training loop. Importing this package is light;
:mod:`audio_thinker.verl_ext.plugin` (loaded by verl's ``verl.plugins`` entry point in every
process that imports verl) does the registrations.
"""
