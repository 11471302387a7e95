"""One module per state of the state machine, named after it (plan, extract_batch,
collect_images, embed, caption_batch, understand, write, record_failure, settle). Each owns its
state's S3 input and output and calls the domain packages (pdf, clip, captions, db), which know
nothing of S3 keys or Step Functions. The handlers, the local engine, tests and benches call these."""
