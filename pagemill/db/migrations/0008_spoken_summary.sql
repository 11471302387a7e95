-- The spoken summary (SpeakSummary): where its audio is, what it is, who spoke it. NULL
-- speech_status: nothing was to be spoken (no summary, or speech off); 'failed': the summary was
-- not spoken, speech_reason says why (the document is partial; a redrive fills it).

alter table documents
    add column speech_status   text check (speech_status in ('spoken', 'failed')),
    add column speech_reason   text,
    add column speech_key      text,     -- the MP3 in the work bucket, under the document's prefix
    add column speech_format   text,     -- 'mp3'
    add column speech_seconds  real,
    add column speech_voice    text,     -- Polly's VoiceId, or the espeak-ng voice
    add column speech_engine   text,     -- Polly's engine (neural, ...), or 'espeak-ng'
    add column speech_language text,     -- the summary's language the voice speaks (ISO 639-1)
    add column speech_chars    int,      -- characters of the summary spoken
    add column speech_cut      boolean;  -- the summary was longer than the cap: it was cut at a sentence
