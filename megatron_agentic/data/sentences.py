"""Sentence splitting for `--split-sentences`, with nltk's Punkt as Megatron-LM uses it.

Punkt's parameters are read from local `punkt_tab` data only (`tokenizers/punkt_tab/<lang>/` under
`--nltk-data`, $NLTK_DATA or nltk's default folders); nothing is downloaded, and missing data is
one clear error saying where it was looked for and how to install it. Texts are split in
1,000,000-character pieces and, with `keep_newlines`, with Punkt's sentence-end context widened so
whitespace (newlines included) stays attached to the sentence it ends, as Megatron-LM's
preprocessing does; the token ids therefore match its output.
"""

from __future__ import annotations

from pathlib import Path

CHUNK_CHARS = 1_000_000


class PunktMissingError(LookupError):
    """The punkt_tab data for a language is not on this machine."""


def _keep_newlines_lang_vars():
    from nltk.tokenize.punkt import PunktLanguageVars

    class KeepNewlines(PunktLanguageVars):
        """A sentence end absorbs the whitespace after it instead of splitting on it."""

        _period_context_fmt = "".join(
            (
                r"\S*%(SentEndChars)s\s*",  # word material, sentence end, any whitespace
                r"(?=(?P<after_tok>%(NonWord)s|(?P<next_tok>\S+)))",  # then a non-space
            )
        )

    return KeepNewlines()


def load_splitter(lang: str = "english", keep_newlines: bool = False, nltk_data: str | None = None):
    """A function text -> sentences using Punkt's `lang` parameters from local data."""
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTokenizer

    if nltk_data and str(Path(nltk_data)) not in nltk.data.path:
        nltk.data.path.insert(0, str(Path(nltk_data)))
    try:
        punkt = PunktTokenizer(lang)
    except LookupError:
        raise PunktMissingError(
            f"--split-sentences: no punkt data for --lang {lang!r} (tokenizers/punkt_tab/{lang}/) "
            f"in {nltk.data.path}; nothing is downloaded. On a machine with network run "
            f"`python -m nltk.downloader -d DIR punkt_tab`, copy DIR here and pass --nltk-data DIR "
            f"(or set NLTK_DATA=DIR)"
        ) from None
    if keep_newlines:
        punkt = PunktSentenceTokenizer(
            train_text=punkt._params, lang_vars=_keep_newlines_lang_vars()
        )

    def split(text: str) -> list[str]:
        return [
            sentence
            for start in range(0, len(text), CHUNK_CHARS)
            for sentence in punkt.tokenize(text[start : start + CHUNK_CHARS])
        ]

    return split
