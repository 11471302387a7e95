"""The local engine: the synthesized state machine on moto's interpreter, each Lambda in a
worker process, each ECS task as a local process, PostgreSQL embedded."""
