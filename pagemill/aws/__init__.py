"""The AWS edge: clients and secrets built lazily for the handlers (clients), the trigger that
starts one execution per uploaded object version, and the running-executions watch."""
