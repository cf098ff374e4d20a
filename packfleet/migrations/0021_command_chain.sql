-- Cancelling a command walks back through the commands it superseded to find the state it replaced.
CREATE INDEX commands_superseded_by_idx ON commands (superseded_by) WHERE superseded_by IS NOT NULL;
