"""The application roles' default names (cruddur.ops.roles says what each may do). Here
on their own, so the CLI's options can show them without importing the database driver."""

API_ROLE = "cruddur_api"
LAMBDA_ROLE = "cruddur_lambda"
