"""Reading what the services leave behind: their spans (``echobase trace``) and their logs
(``echobase logs``). Pure parsing and merging over files; the CLI only prints."""
