"""The developer and operator harness: the CLI, the local engine that runs the synthesized state
machine, status/cancel/redrive, the sample and test-model generators, the embedded and scratch
databases. Never deployed: the Lambda bundler copies only ``pagemill/``."""
