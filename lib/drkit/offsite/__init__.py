"""The off-site copy: dr/backup-copy pulls every signed backup, archive, blob and catalog head into a second bucket."""
