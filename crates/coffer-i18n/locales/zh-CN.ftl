# coffer 的简体中文消息。与 en.ftl 的消息 id 一一对应；缺少的消息以英文显示。

## Words and times
word-never = 从未
status-never-run = 从未运行
status-paused = （已暂停）
rpo-overdue = 已超期
rpo-at-risk = 有风险
rpo-ok = 正常
rpo-none = 无
time-ago = { $d }前
time-in = { $d }后
prefix-fatal = 错误
prefix-incomplete = 未完成
prefix-warning = 警告
prefix-error = 错误

## Table headers
col-job = 作业
col-status = 状态
col-last-success = 最近成功
col-age-rpo = 备份距今 / RPO
col-next-run = 下次运行
col-run = 运行
col-started = 开始时间
col-took = 耗时
col-read = 读取
col-stored = 写入
col-snapshots-error = 快照 / 错误
col-id = ID
col-state = 状态
col-severity = 级别
col-alert = 告警
col-on = 对象
col-since = 开始于
col-summary = 摘要

## coffer alerts
alerts-none = 没有告警
state-firing = 告警中
state-pending = 待定
state-resolved = 已恢复
state-silenced = 已静默
state-inhibited = 已抑制
state-acked = 已确认

## coffer check
check-summary = 已检查 { $index } 个索引文件、{ $packs } 个数据包、{ $snapshots } 个快照、{ $trees } 个目录树
check-read = 已读取 { $packs } 个数据包（{ $bytes }），{ $blobs } 个数据块已解密并校验
check-unreferenced = { $n } 个数据包未被任何索引引用（中断的运行留下的；这不是错误，`coffer prune` 会删除它们）
check-damaged-pack = 数据包 { $pack } 已损坏：{ $n } 个数据块无法读取
check-affected = 快照 { $id }（{ $time } { $paths }）依赖已损坏或缺失的数据：{ $n } 个路径
check-more = ……另有 { $n } 个
check-ok = 未发现错误
check-errors = 检查发现 { $n } 个错误；仓库已损坏（见上文；`coffer repair index` 和 `coffer repair snapshots` 可以挽救能挽救的数据）

## coffer restore
restore-start = 正在恢复快照 { $id }（{ $paths }，{ $time }）到 { $target }
restore-done = 已恢复 { $files } 个文件、{ $dirs } 个目录，共 { $bytes }，用时 { $secs } 秒（{ $rate }）
restore-verified = ，已校验 { $n } 个文件
restore-source-start = 正在从快照 { $id }（{ $time }）恢复数据源 { $source }（{ $kind }）
restore-source-done = 完成，用时 { $secs } 秒
restore-run-source = { $source }：快照 { $id } -> { $dir }（{ $files } 个文件，{ $bytes }）
restore-source-missing = 数据源 { $source } 未恢复：{ $reason }
restore-include-unmatched = --include { $pattern } 在快照 { $id } 中没有匹配任何内容（路径：{ $paths }）
restore-include-unmatched-run = --include { $pattern } 在运行 { $run } 的所有快照中都没有匹配任何内容
restore-nothing = 没有恢复任何内容：快照 { $id } 中没有路径匹配 --include { $patterns }
restore-latest-hint = ；`latest` 是任意路径中最新的快照（此处为 { $paths }）：请用 --path、--tag、--host 或快照 id 指定
restore-run-partial = 已恢复运行 { $run } 的 { $total } 个数据源中的 { $found } 个；未恢复：{ $names }（见上文；--partial 接受部分恢复）
restore-damaged-file = { $path } 未能完整恢复：{ $reason }
restore-damaged-kept = （已读出的内容保存为 { $kept }）
restore-incomplete = { $damaged } 个文件未能完整恢复，另有 { $errors } 项失败（见上文）；其余内容均已完整恢复
restore-includes-partial = --include { $patterns } 没有匹配任何内容：恢复的内容少于要求（--partial 接受这种情况）

## Alert texts (sent to channels)
alert-backup-failed-summary = 备份 { $job } 失败：{ $error }
alert-backup-failed-description = 作业 { $job }（仓库 { $repo }）的运行 { $run } 以 FAILED 结束；已连续失败 { $count } 次。
alert-overdue-summary = 备份 { $job } 已超期：已有 { $age } 没有成功的备份（RPO { $rpo }）
alert-overdue-newest = 最近一次成功的备份结束于 { $time }
alert-overdue-none = 该作业还没有成功的备份
alert-overdue-description = { $what }；调度器可能已停止，或者每次运行都失败了。
alert-stuck-summary = 备份 { $job } 已运行 { $running }（max_runtime 为 { $max }）
alert-stuck-description = 运行在达到 max_runtime 时没有停止：其进程可能已挂起。
alert-slow-summary = 备份 { $job } 耗时 { $took }（最近成功运行的中位数：{ $median }）
alert-slow-description = 运行 { $run } 的耗时超过平常的两倍。
alert-compression-summary = 备份 { $job } 的压缩比为 { $ratio }:1（中位数 { $median }:1）
alert-compression-description = 运行 { $run } 每字节源数据写入的数据远多于平常：数据的性质可能变了（已加密或已压缩），或者去重失效了。
alert-storage-summary = 仓库 { $repo } 已使用 { $percent }%，剩余 { $free }（{ $level } 阈值）
alert-storage-summary-unmeasured = 仓库 { $repo } 已使用 { $percent }%（{ $level } 阈值）
alert-storage-critical = 写入该仓库的备份已暂停，直到释放空间
alert-storage-high = 请清理（prune）或扩容存储
alert-storage-low = 请留意
alert-storage-description = 仓库 { $repo } 的存储：{ $action }。
alert-verify-summary = 仓库 { $repo } 的校验发现损坏
alert-verify-detail = { $problems } 个问题；损坏的数据包：{ $packs }；受影响的快照：{ $snapshots }
alert-verify-description = 运行 { $run }：{ $detail }
alert-channel-summary = 通知渠道 { $channel } 发送失败
alert-channel-description = 自 { $since } 起：{ $error }。发往该渠道的告警会在每个 group_interval 重试。
alert-scheduler-summary = coffer 调度器已有 { $age } 没有运行
alert-scheduler-description = 最近一次心跳 { $time }：没有任何备份被调度。`coffer serve` 在运行吗？
alert-drill-failed-summary = 恢复演练 { $scenario } 失败：{ $error }
alert-drill-failed-description = 演练 { $run } 未能证明 { $scenario } 可以恢复。报告：{ $report }
alert-drill-missed-summary = 恢复演练 { $scenario } 未达到目标：{ $what }
alert-drill-missed-description = 演练 { $run } 已恢复并检查了全部数据，但耗时过长或所用备份过旧。报告：{ $report }
alert-drill-overdue-summary = 恢复演练 { $scenario } 已超期：上次通过的演练在 { $age } 之前（最长 { $max }）
alert-drill-overdue-description = 从未恢复过的备份不算备份。请运行：coffer dr drill --scenario { $scenario }

## Notifications
notif-firing = 告警
notif-resolved = 已恢复
notif-test = 测试
notif-labels = 标签
notif-started = 开始
notif-ended = 结束
notif-runbook = 处置手册
notif-more = { $title } 等另外 { $n } 条
notif-test-summary = 来自 { $host } 的 coffer 测试通知
notif-test-description = 这是 `coffer alert test` 发送的测试消息：如果您能看到它，说明该渠道可以送达 coffer 的告警。无需任何操作。
