"""Pure renderings of the one stack description (``echobase.platform.stack``) for every
target: this machine's supervisor programs, nginx and Prometheus, and Docker Compose,
Kubernetes and AWS CloudFormation. A renderer takes the stack plus explicit inputs (a user,
paths, binaries found) and returns text, data or commands; it starts, reads and writes
nothing. The layers' own packages (``durable/``, ``ephemeral/``, ``bluegreen/``,
``runtime/``) carry renderings out. ``tests/unit/test_render_imports.py`` holds the rule."""
