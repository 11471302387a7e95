"""CDK constructs of the pagemill pipeline (infrastructure only: never imports ``pagemill``)."""
