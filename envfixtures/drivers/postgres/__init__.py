"""PostgreSQL: a server as a child process, and the platform's migrations."""
