#!/usr/bin/env bats
# The tuning scripts against fake sysfs/procfs/etc trees: a 16-CPU host with a 16-queue NIC.
# Checks exact values written, idempotence, revert, and shellcheck.

setup() {
    T=$BATS_TEST_TMPDIR
    export TUNING_SYSFS=$T/sys TUNING_PROCFS=$T/proc TUNING_ETC=$T/etc TUNING_STATE_DIR=$T/state
    export FAKE_ETHTOOL_DIR=$T/ethtool
    export PATH="$BATS_TEST_DIRNAME/fake-bin:$PATH"
    D=$BATS_TEST_DIRNAME/..
    mkdir -p "$TUNING_SYSFS/class/net/eth0/device/msi_irqs" "$TUNING_PROCFS/sys/vm" \
        "$TUNING_SYSFS/kernel/mm/transparent_hugepage" "$TUNING_ETC/default" "$FAKE_ETHTOOL_DIR"
    {
        printf '            CPU0       CPU1\n'
        printf ' 100:          1          0  IR-PCI-MSI 524288-edge      eth0\n'
        for q in $(seq 0 15); do
            printf ' %d:          5          0  IR-PCI-MSI 52429%d-edge      eth0-TxRx-%d\n' $((101 + q)) "$q" "$q"
        done
        printf ' 200:          9          0  IR-PCI-MSI 1000-edge      nvme0q1\n'
    } >"$TUNING_PROCFS/interrupts"
    for irq in 100 $(seq 101 116) 200; do
        mkdir -p "$TUNING_PROCFS/irq/$irq"
        echo "0-15" >"$TUNING_PROCFS/irq/$irq/smp_affinity_list"
    done
    for irq in 100 $(seq 101 116); do touch "$TUNING_SYSFS/class/net/eth0/device/msi_irqs/$irq"; done
    for q in $(seq 0 15); do
        mkdir -p "$TUNING_SYSFS/class/net/eth0/queues/tx-$q" "$TUNING_SYSFS/class/net/eth0/queues/rx-$q"
        echo "0000" >"$TUNING_SYSFS/class/net/eth0/queues/tx-$q/xps_cpus"
        echo "ffff" >"$TUNING_SYSFS/class/net/eth0/queues/rx-$q/rps_cpus"
    done
    echo 'IRQBALANCE_ARGS=""' >"$TUNING_ETC/default/irqbalance"
    # /proc/sys with distribution defaults.
    while read -r key value; do
        mkdir -p "$(dirname "$TUNING_PROCFS/sys/${key//.//}")"
        printf '%s\n' "$value" >"$TUNING_PROCFS/sys/${key//.//}"
    done <<'EOF_SYS'
net.core.somaxconn 4096
net.ipv4.tcp_max_syn_backlog 1024
net.core.netdev_max_backlog 1000
net.core.rmem_max 212992
net.core.wmem_max 212992
net.ipv4.tcp_rmem 4096	131072	6291456
net.ipv4.tcp_wmem 4096	16384	4194304
net.ipv4.tcp_mem 188088	250784	376176
net.ipv4.ip_local_port_range 32768	60999
net.ipv4.ip_local_reserved_ports 
fs.nr_open 1048576
fs.file-max 9223372036854775807
net.core.busy_poll 0
net.core.busy_read 0
vm.nr_hugepages 0
EOF_SYS
    echo "MemTotal:       65536000 kB" >"$TUNING_PROCFS/meminfo"
    echo "[always] madvise never" >"$TUNING_SYSFS/kernel/mm/transparent_hugepage/enabled"
    for kv in max_combined=16 combined=4 max_ring=4096 rx=512 tx=512 arx=off atx=off gro=on gso=off tso=on; do
        echo "${kv#*=}" >"$FAKE_ETHTOOL_DIR/${kv%%=*}"
    done
}

affinity() { cat "$TUNING_PROCFS/irq/$1/smp_affinity_list"; }

@test "irq-affinity: dry run lists every queue and writes nothing" {
    run "$D/irq-affinity.sh" --iface eth0 --cpu-list 0-15 --dry-run
    [ "$status" -eq 0 ]
    [ "$(grep -c '^would .*smp_affinity_list: 0-15 -> ' <<<"$output")" -eq 16 ]
    [[ $output == *"dry run: 17 change(s)"* ]]
    for irq in $(seq 101 116); do [ "$(affinity "$irq")" = "0-15" ]; done
    [ ! -e "$TUNING_STATE_DIR" ]
}

@test "irq-affinity: 16 queues pinned 1:1 in order on a 16-CPU host, other IRQs untouched" {
    run "$D/irq-affinity.sh" --iface eth0 --cpu-list 0-15 --apply
    [ "$status" -eq 0 ]
    for q in $(seq 0 15); do [ "$(affinity $((101 + q)))" = "$q" ]; done
    [ "$(affinity 100)" = "0-15" ]
    [ "$(affinity 200)" = "0-15" ]
    grep -q 'IRQBALANCE_ARGS="--banirq=101 --banirq=102 .* --banirq=116"' "$TUNING_ETC/default/irqbalance"
}

@test "irq-affinity: housekeeping cores are skipped and queues wrap over the rest" {
    run "$D/irq-affinity.sh" --iface eth0 --cpu-list 0-15 --housekeeping 0,1 --apply
    [ "$status" -eq 0 ]
    [[ $output == *"16 queues for 14 CPUs"* ]]
    [ "$(affinity 101)" = "2" ]
    [ "$(affinity 114)" = "15" ]
    [ "$(affinity 115)" = "2" ]
    [ "$(affinity 116)" = "3" ]
}

@test "irq-affinity: apply is idempotent and revert restores the original state" {
    "$D/irq-affinity.sh" --iface eth0 --cpu-list 0-15 --apply
    run "$D/irq-affinity.sh" --iface eth0 --cpu-list 0-15 --apply
    [[ $output == *"applied 0 change(s)"* ]]
    run "$D/irq-affinity.sh" --revert
    [ "$status" -eq 0 ]
    for irq in $(seq 101 116); do [ "$(affinity "$irq")" = "0-15" ]; done
    [ "$(cat "$TUNING_ETC/default/irqbalance")" = 'IRQBALANCE_ARGS=""' ]
    [ ! -e "$TUNING_STATE_DIR/irq-affinity.state" ]
}

@test "nic: queues, rings, coalescing, XPS/RPS masks and offloads, then revert" {
    run "$D/nic.sh" --iface eth0 --cpu-list 0-15 --apply
    [ "$status" -eq 0 ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/combined")" = 16 ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/rx")" = 4096 ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/tx")" = 4096 ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/arx")/$(cat "$FAKE_ETHTOOL_DIR/atx")" = on/on ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/gso")" = on ]
    q=$TUNING_SYSFS/class/net/eth0/queues
    [ "$(cat "$q/tx-0/xps_cpus")" = 1 ]
    [ "$(cat "$q/tx-5/xps_cpus")" = 20 ]
    [ "$(cat "$q/tx-15/xps_cpus")" = 8000 ]
    [ "$(cat "$q/rx-7/rps_cpus")" = 0 ]
    # The kernel reads masks back zero-padded: still nothing to do.
    for k in $(seq 0 15); do printf '%08x\n' $((1 << k)) >"$q/tx-$k/xps_cpus"; done
    run "$D/nic.sh" --iface eth0 --cpu-list 0-15 --apply
    [[ $output == *"applied 0 change(s)"* ]]
    run "$D/nic.sh" --revert
    [ "$status" -eq 0 ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/combined")" = 4 ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/rx")" = 512 ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/arx")" = off ]
    [ "$(cat "$FAKE_ETHTOOL_DIR/gso")" = off ]
    [ "$(cat "$q/tx-5/xps_cpus")" = 0000 ]
    [ "$(cat "$q/rx-7/rps_cpus")" = ffff ]
}

@test "sysctl: exact values, tcp_mem sized to RAM, idempotent, revertible" {
    run "$D/sysctl.sh" --apply
    [ "$status" -eq 0 ]
    s=$TUNING_PROCFS/sys
    [ "$(cat "$s/net/core/somaxconn")" = 65535 ]
    [ "$(cat "$s/net/ipv4/tcp_rmem")" = "4096 131072 16777216" ]
    [ "$(cat "$s/net/ipv4/ip_local_port_range")" = "10240 65535" ]
    [ "$(cat "$s/net/ipv4/tcp_mem")" = "1024000 2048000 4096000" ]
    [ "$(cat "$s/fs/nr_open")" = 4194304 ]
    run "$D/sysctl.sh" --apply
    [[ $output == *"applied 0 change(s)"* ]]
    "$D/sysctl.sh" --revert
    [ "$(cat "$s/net/core/somaxconn")" = 4096 ]
    [ "$(cat "$s/net/ipv4/tcp_rmem")" = "4096 131072 6291456" ]
    [ "$(cat "$s/net/ipv4/ip_local_port_range")" = "32768 60999" ]
}

# Regression: the range proposed was 1024-65535, which covers 1935 and 8080: an outgoing
# connection could take the engine's own port and block its restart.
@test "sysctl: the local port range leaves the engine's ports out, and they are reserved" {
    s=$TUNING_PROCFS/sys
    run "$D/sysctl.sh" --apply
    [ "$status" -eq 0 ]
    read -r low high <"$s/net/ipv4/ip_local_port_range"
    for p in 1935 8080; do ((p < low || p > high)); done
    [ "$(cat "$s/net/ipv4/ip_local_reserved_ports")" = "1935,8080" ]
    # Ports inside the range, from --ports and from a config file, are reserved too; the
    # reservations already there stay.
    "$D/sysctl.sh" --revert
    echo "22000-22010" >"$s/net/ipv4/ip_local_reserved_ports"
    printf 'rtmp = "0.0.0.0:19350"\nhttp = "127.0.0.1:18080"  # ours\ncores = 4\n' >"$T/engine.conf"
    run "$D/sysctl.sh" --ports 1935,40443 --config "$T/engine.conf" --apply
    [ "$status" -eq 0 ]
    [ "$(cat "$s/net/ipv4/ip_local_reserved_ports")" = "1935,18080,19350,22000-22010,40443" ]
    [[ $output == *"port 40443 is inside the local port range"* ]]
    run "$D/sysctl.sh" --ports 80,http --dry-run
    [ "$status" -eq 2 ]
}

# Regression: the script lowered a host's higher tcp_rmem maximum, and turned busy polling on
# for every socket on the host.
@test "sysctl: buffers are raised, never lowered; busy polling only with --busy-poll" {
    s=$TUNING_PROCFS/sys
    echo '4096 262144 33554432' >"$s/net/ipv4/tcp_rmem"
    echo 33554432 >"$s/net/core/rmem_max"
    run "$D/sysctl.sh" --apply
    [ "$status" -eq 0 ]
    [ "$(cat "$s/net/ipv4/tcp_rmem")" = "4096 262144 33554432" ]
    [ "$(cat "$s/net/core/rmem_max")" = 33554432 ]
    [ "$(cat "$s/net/ipv4/tcp_wmem")" = "4096 131072 16777216" ]
    [ "$(cat "$s/net/core/busy_poll")" = 0 ]
    [ "$(cat "$s/net/core/busy_read")" = 0 ]
    run "$D/sysctl.sh" --busy-poll --apply
    [ "$(cat "$s/net/core/busy_poll")" = 50 ]
    [ "$(cat "$s/net/core/busy_read")" = 50 ]
}

# Regression: `--dry-run --apply` applied (the last mode won).
@test "modes that contradict each other are an error and change nothing" {
    for script in sysctl.sh "hugepages.sh --cache-mb 64 --cores 1" "limits.sh --user x"; do
        # shellcheck disable=SC2086 # the script and its arguments, split on purpose
        run "$D"/$script --dry-run --apply
        [ "$status" -eq 2 ]
        [[ $output == *"--dry-run and --apply contradict each other"* ]]
    done
    [ "$(cat "$TUNING_PROCFS/sys/net/core/somaxconn")" = 4096 ]
    [ ! -e "$TUNING_STATE_DIR" ]
    run "$D/sysctl.sh" --apply --apply
    [ "$status" -eq 0 ]
}

# Regression: on a virtio NIC (no MSI-X queue IRQs), check.sh stopped with status 2 after the
# NIC section and never checked sysctl, huge pages or limits.
@test "check: every section is reported even when the NIC cannot be read" {
    rm -r "$TUNING_SYSFS/class/net/eth0/device/msi_irqs"
    run "$D/check.sh" --iface eth0 --cpu-list 0-1
    [ "$status" -eq 1 ]
    [[ $output == *"its queue IRQs cannot be read"* ]]
    for section in "== IRQ affinity" "== NIC" "== sysctl" "== huge pages" "== limits"; do
        [[ $output == *"$section"* ]]
    done
    [[ $output == *"ERROR: the IRQ affinity check failed"* ]]
    [[ $output == *"RESULT: some sections could not be checked"* ]]
}

# Regression: nic.sh needed ethtool even for a dry run.
@test "nic: a dry run without ethtool says what --apply would do; --apply needs it" {
    run env TUNING_ETHTOOL=/nonexistent/ethtool "$D/nic.sh" --iface eth0 --cpu-list 0-3 --dry-run
    [ "$status" -eq 0 ]
    [[ $output == *"ethtool is not installed"* ]]
    [[ $output == *"would eth0 combined queues: 4"* ]]
    [[ $output == *"tx-3/xps_cpus: 0000 -> 8"* ]]
    run env TUNING_ETHTOOL=/nonexistent/ethtool "$D/nic.sh" --iface eth0 --cpu-list 0-3 --apply
    [ "$status" -eq 2 ]
    [[ $output == *"ethtool is required to apply"* ]]
}

# Regression: limits.sh defaulted to a user `edge` that does not exist, while the shipped unit
# runs as a DynamicUser (to which limits.d never applies).
@test "limits: the shipped unit's limits suffice; a unit that falls short gets a drop-in" {
    u=$TUNING_ETC/systemd/system
    mkdir -p "$u"
    cp "$D/../deploy/systemd/edge-engine.service" "$u/"
    run "$D/limits.sh" --cores 16 --dry-run
    [ "$status" -eq 0 ]
    [[ $output == *"ok    $u/edge-engine.service: LimitNOFILE=1048576 LimitMEMLOCK=infinity"* ]]
    [[ $output == *"dry run: 0 change(s)"* ]]
    sed -i 's/^LimitNOFILE=.*/LimitNOFILE=1024/' "$u/edge-engine.service"
    run "$D/limits.sh" --cores 16 --apply
    [ "$status" -eq 0 ]
    grep -qx 'LimitNOFILE=1048576' "$u/edge-engine.service.d/limits.conf"
    run "$D/limits.sh" --cores 16 --apply
    [[ $output == *"applied 0 change(s)"* ]]
    "$D/limits.sh" --revert
    [ ! -e "$u/edge-engine.service.d/limits.conf" ]
}

# Regression: several --help texts ended with a stray `set -euo pipefail`.
@test "every script's --help is its header, and only that" {
    for script in check sysctl hugepages limits nic irq-affinity; do
        run "$D/$script.sh" --help
        [ "$status" -eq 0 ]
        [[ $output == *"Usage: $script.sh"* ]]
        [[ $output != *"set -euo"* ]]
        [[ $output != *"#"* ]]
    done
}

@test "hugepages: pages for the cache plus one per shard, THP to madvise, revertible" {
    run "$D/hugepages.sh" --cache-mb 1024 --cores 16 --apply
    [ "$status" -eq 0 ]
    [ "$(cat "$TUNING_PROCFS/sys/vm/nr_hugepages")" = 528 ]
    [ "$(cat "$TUNING_SYSFS/kernel/mm/transparent_hugepage/enabled")" = madvise ]
    # The kernel shows the selector form; that counts as already set.
    echo "always [madvise] never" >"$TUNING_SYSFS/kernel/mm/transparent_hugepage/enabled"
    run "$D/hugepages.sh" --cache-mb 1024 --cores 16 --apply
    [[ $output == *"applied 0 change(s)"* ]]
    "$D/hugepages.sh" --revert
    [ "$(cat "$TUNING_PROCFS/sys/vm/nr_hugepages")" = 0 ]
    [ "$(cat "$TUNING_SYSFS/kernel/mm/transparent_hugepage/enabled")" = always ]
}

@test "limits: nofile and memlock for the io_uring rings of all shards, revert removes the file" {
    run "$D/limits.sh" --user edge --cores 16 --uring-entries 4096 --apply
    [ "$status" -eq 0 ]
    f=$TUNING_ETC/security/limits.d/edge-engine.conf
    grep -qx 'edge hard nofile 1048576' "$f"
    grep -qx 'edge soft memlock 12800' "$f"
    run "$D/limits.sh" --user edge --cores 16 --uring-entries 4096 --apply
    [[ $output == *"applied 0 change(s)"* ]]
    "$D/limits.sh" --revert
    [ ! -e "$f" ]
}

@test "check: non-zero while off, zero after applying, and names the matching --cpu-list" {
    run "$D/check.sh" --iface eth0 --cpu-list 0-15
    [ "$status" -eq 1 ]
    [[ $output == *"not pinned one CPU each"* ]]
    "$D/irq-affinity.sh" --iface eth0 --cpu-list 2-15 --apply
    "$D/nic.sh" --iface eth0 --cpu-list 2-15 --apply
    "$D/sysctl.sh" --apply
    "$D/hugepages.sh" --cache-mb 1024 --cores 14 --apply
    "$D/limits.sh" --cores 14 --apply
    run "$D/check.sh" --iface eth0
    [ "$status" -eq 0 ]
    [[ $output == *"matching engine command: edge-engine --cores 14 --cpu-list 2-15"* ]]
    [[ $output == *"RESULT: everything matches"* ]]
}

@test "scripts are shellcheck clean" {
    command -v shellcheck
    run shellcheck -x "$D"/*.sh "$D/tests/fake-bin/ethtool"
    [ "$status" -eq 0 ]
}
