"""``python -m audio_thinker.toy.base``: see :mod:`audio_thinker.toy.base.cli`."""

import sys

from audio_thinker.toy.base.cli import main

sys.exit(main())
