"""``python -m audio_thinker.toy.warmstart``: see :mod:`audio_thinker.toy.warmstart.cli`."""

import sys

from audio_thinker.toy.warmstart.cli import main

sys.exit(main())
