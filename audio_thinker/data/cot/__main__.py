"""``python -m audio_thinker.data.cot``: see :mod:`audio_thinker.data.cot.cli`."""

import sys

from audio_thinker.data.cot.cli import main

sys.exit(main())
