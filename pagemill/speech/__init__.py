"""Speaking a document's summary: one interface (``engine.SpeechEngine``) with Amazon Polly on AWS
(``polly``) and espeak-ng on a developer's machine and in tests (``espeak``); both give PCM, which
``audio`` encodes to MP3 the same way."""
