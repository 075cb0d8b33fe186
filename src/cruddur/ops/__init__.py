"""The admin verbs behind `cruddur db …`: each takes a Target and does one job."""
