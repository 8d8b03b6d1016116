"""The base every module may use: the error tree, JSON logs with redaction, deadlines, secrets."""
