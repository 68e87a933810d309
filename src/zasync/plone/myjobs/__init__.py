"""What a user sees of their own jobs: ``@@my-jobs`` and the notices of
finished jobs on their next page (see views and notices)."""
