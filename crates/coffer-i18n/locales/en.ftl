# coffer's messages in English (the default, and the fallback of every other catalog).
# One message per line; `{ $name }` is an argument. Keep the ids in step with zh-CN.ftl.

## Words and times
word-never = never
status-never-run = never run
status-paused = (paused)
rpo-overdue = OVERDUE
rpo-at-risk = AT RISK
rpo-ok = ok
rpo-none = none
time-ago = { $d } ago
time-in = in { $d }
prefix-fatal = Fatal
prefix-incomplete = Incomplete
prefix-warning = warning
prefix-error = error

## Table headers
col-job = JOB
col-status = STATUS
col-last-success = LAST SUCCESS
col-age-rpo = AGE / RPO
col-next-run = NEXT RUN
col-run = RUN
col-started = STARTED
col-took = TOOK
col-read = READ
col-stored = STORED
col-snapshots-error = SNAPSHOTS / ERROR
col-id = ID
col-state = STATE
col-severity = SEVERITY
col-alert = ALERT
col-on = ON
col-since = SINCE
col-summary = SUMMARY

## coffer alerts
alerts-none = no alerts
state-firing = firing
state-pending = pending
state-resolved = resolved
state-silenced = silenced
state-inhibited = inhibited
state-acked = acked

## coffer check
check-summary = checked { $index } index files, { $packs } packs, { $snapshots } snapshots, { $trees } trees
check-read = read { $packs } packs ({ $bytes }), { $blobs } blobs decrypted and hashed
check-unreferenced = { $n } packs are not referenced by any index (left by interrupted runs; not an error, `coffer prune` removes them)
check-damaged-pack = damaged pack { $pack }: { $n } blob(s) unreadable
check-affected = snapshot { $id } ({ $time } { $paths }) depends on damaged or missing data: { $n } path(s)
check-more = ... and { $n } more
check-ok = no errors were found
check-errors = check found { $n } error(s); the repository is damaged (see above; `coffer repair index` and `coffer repair snapshots` save what can be saved)

## coffer restore
restore-start = restoring snapshot { $id } of { $paths } at { $time } to { $target }
restore-done = restored { $files } files, { $dirs } dirs, { $bytes } in { $secs }s ({ $rate })
restore-verified = , verified { $n } files
restore-source-start = restoring source { $source } ({ $kind }) from snapshot { $id } taken { $time }
restore-source-done = done in { $secs }s
restore-run-source = { $source }: snapshot { $id } -> { $dir } ({ $files } files, { $bytes })
restore-source-missing = source { $source }: not restored: { $reason }
restore-include-unmatched = --include { $pattern } matched nothing in snapshot { $id } (paths: { $paths })
restore-include-unmatched-run = --include { $pattern } matched nothing in any snapshot of run { $run }
restore-nothing = nothing restored: no path of snapshot { $id } matched --include { $patterns }
restore-latest-hint = ; `latest` is the newest snapshot of any paths (here { $paths }): choose one with --path, --tag, --host or its id
restore-run-partial = restored { $found } of { $total } sources of run { $run }; not restored: { $names } (see above; --partial accepts a partial restore)
restore-damaged-file = { $path }: not restored exactly: { $reason }
restore-damaged-kept = {" "}(what could be read is kept as { $kept })
restore-incomplete = { $damaged } file(s) could not be restored exactly and { $errors } other item(s) failed (named above); everything else was restored exactly
restore-includes-partial = --include { $patterns } matched nothing: less was restored than asked (--partial accepts that)

## Alert texts (sent to channels)
alert-backup-failed-summary = Backup { $job } failed: { $error }
alert-backup-failed-description = Run { $run } of job { $job } (repository { $repo }) ended FAILED; { $count } failure(s) in a row.
alert-overdue-summary = Backup { $job } is overdue: no good backup for { $age } (RPO { $rpo })
alert-overdue-newest = the newest good backup ended { $time }
alert-overdue-none = the job has no good backup yet
alert-overdue-description = { $what }; the scheduler may have stopped, or every run failed.
alert-stuck-summary = Backup { $job } has been running for { $running } (max_runtime { $max })
alert-stuck-description = The run did not stop at its max_runtime: its process may hang.
alert-slow-summary = Backup { $job } took { $took } (median of the last good runs: { $median })
alert-slow-description = Run { $run } took more than twice its usual time.
alert-compression-summary = Backup { $job } compressed { $ratio }:1 (median { $median }:1)
alert-compression-description = Run { $run } stored much more per source byte than usual: data may have changed nature (encrypted, already compressed) or deduplication broke.
alert-storage-summary = Repository { $repo } is { $percent }% full, { $free } free ({ $level } threshold)
alert-storage-summary-unmeasured = Repository { $repo } is { $percent }% full ({ $level } threshold)
alert-storage-critical = backups into it are paused until space is freed
alert-storage-high = clean up (prune) or grow the storage
alert-storage-low = keep an eye on it
alert-storage-description = Storage of repository { $repo }: { $action }.
alert-verify-summary = Verify of repository { $repo } found damage
alert-verify-detail = { $problems } problem(s); damaged packs: { $packs }; affected snapshots: { $snapshots }
alert-verify-description = Run { $run }: { $detail }
alert-channel-summary = Notification channel { $channel } is failing
alert-channel-description = Since { $since }: { $error }. Alerts for it are retried every group_interval.
alert-scheduler-summary = The coffer scheduler has not run for { $age }
alert-scheduler-description = Last heartbeat { $time }: no backup is being scheduled. Is `coffer serve` running?
alert-drill-failed-summary = Restore drill { $scenario } failed: { $error }
alert-drill-failed-description = Drill { $run } could not prove that { $scenario } can be recovered. Report: { $report }
alert-drill-missed-summary = Restore drill { $scenario } missed its targets: { $what }
alert-drill-missed-description = Drill { $run } restored and checked everything, but too slowly or from too old a backup. Report: { $report }
alert-drill-overdue-summary = Restore drill { $scenario } is overdue: the last passed drill was { $age } ago (at most { $max })
alert-drill-overdue-description = A backup that was never restored is no backup. Run: coffer dr drill --scenario { $scenario }

## Notifications
notif-firing = FIRING
notif-resolved = RESOLVED
notif-test = TEST
notif-labels = labels
notif-started = started
notif-ended = ended
notif-runbook = runbook
notif-more = { $title } and { $n } more
notif-test-summary = coffer test notification from { $host }
notif-test-description = This is a test message sent by `coffer alert test`: if you can read it, this channel delivers coffer's alerts. No action is needed.
