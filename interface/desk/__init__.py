"""The people's side: users, passwords, sign-in, masking, the clerk's error-queue actions."""
