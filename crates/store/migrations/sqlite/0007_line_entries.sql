-- The indices of the log's entries that may be the line's (their bytes hold
-- "line.": every `line.*` entry does; the full parse at replay drops any
-- other). A start replays the line from these rows instead of scanning every
-- entry of the log, which grows with the log's whole history.
CREATE TABLE log_line (
    idx INTEGER PRIMARY KEY
) STRICT;
INSERT INTO log_line (idx)
    SELECT idx FROM log_entries WHERE instr(data, X'6c696e652e') > 0;
