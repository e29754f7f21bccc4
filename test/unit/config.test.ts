// The TOML config: defaults, every section, and refusal of typos and wrong types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, defaultConfig, parseConfigText } from '../../src/config/config.ts';

test('an empty file gives the embedded defaults', () => {
  assert.deepEqual(parseConfigText(''), defaultConfig());
  const d = defaultConfig();
  assert.equal(d.socket, '/run/berth/berth.sock');
  assert.equal(d.root, '/var/lib/berth');
  assert.deepEqual(d.registry.plainHttpHosts.slice(0, 2), ['localhost', '127.0.0.1']);
});

test('mirrors, credentials and runtime handlers are read', () => {
  const cfg = parseConfigText(`
root = "/srv/berth"
log_level = "debug"
cgroup_driver = "systemd"
[image]
platform = "linux/arm64/v8"
max_concurrent_downloads = 2
sync_layers = true
[registry]
plain_http = ["localhost", "registry.lan:5000"]
[registry.hosts."docker.io"]
mirrors = ["http://localhost:5000", "https://mirror.example.com"]
[registry.hosts."registry.k8s.io"]
mirrors = ["http://localhost:5000"]
skip_upstream = true
[registry.hosts."private.example.com"]
username = "u"
password = "p"
ca_file = "/etc/ssl/private-ca.pem"
[runtime]
default_handler = "crun"
conmon_path = "/usr/libexec/crio/conmon"
exec_helper = ""
[runtime.handlers.kata]
path = "/opt/kata/bin/kata-runtime"
`);
  assert.equal(cfg.root, '/srv/berth');
  assert.equal(cfg.cgroupDriver, 'systemd');
  assert.equal(cfg.image.platform, 'linux/arm64/v8');
  assert.equal(cfg.image.maxConcurrentDownloads, 2);
  assert.equal(cfg.image.syncLayers, true);
  assert.deepEqual(cfg.registry.plainHttpHosts, ['localhost', 'registry.lan:5000']);
  assert.deepEqual(cfg.registry.hosts['docker.io']?.mirrors, ['http://localhost:5000', 'https://mirror.example.com']);
  assert.equal(cfg.registry.hosts['registry.k8s.io']?.skipUpstream, true);
  assert.equal(cfg.registry.hosts['private.example.com']?.username, 'u');
  assert.equal(cfg.registry.hosts['private.example.com']?.caFile, '/etc/ssl/private-ca.pem');
  assert.equal(cfg.runtime.defaultHandler, 'crun');
  assert.equal(cfg.runtime.handlers.kata?.path, '/opt/kata/bin/kata-runtime');
  assert.equal(cfg.runtime.handlers.runc?.path, 'runc');
  assert.equal(cfg.runtime.conmonPath, '/usr/libexec/crio/conmon');
  assert.equal(cfg.runtime.infraPath, 'catatonit');
  assert.equal(cfg.runtime.execHelper, '', 'empty turns the exec helper off');
  assert.match(parseConfigText('').runtime.execHelper, /\/dist\/berth-exec-helper$/);
});

test('network keys are read', () => {
  const c = parseConfigText('[network]\ncni_conf_dir = "/c"\ndefault_subnet = "10.1.0.0/16,fd00::/64"\ndefault_bridge = "br9"\nplugin_timeout = 5\nnetns_pool = 0');
  assert.deepEqual(c.network, { cniConfDir: '/c', cniBinDirs: ['/usr/lib/cni', '/opt/cni/bin'], defaultSubnet: '10.1.0.0/16,fd00::/64', defaultBridge: 'br9', pluginTimeoutSeconds: 5, netnsPool: 0 });
});

test('typos, wrong types and bad values are refused naming the key', () => {
  const cases: Array<[string, RegExp]> = [
    ['roots = "/x"', /unknown config key roots/],
    ['[registry.hosts."docker.io"]\nmirror = ["http://x"]', /unknown config key registry\.hosts\.docker\.io\.mirror/],
    ['[registry.hosts."docker.io"]\nmirrors = ["ftp://x"]', /must be an http:\/\/ or https:\/\/ URL/],
    ['log_level = "loud"', /log_level must be one of/],
    ['[image]\nmax_concurrent_downloads = 0', /max_concurrent_downloads must be an integer from 1/],
    ['[runtime]\ndefault_handler = "nope"', /default_handler "nope" is not in runtime\.handlers/],
    ['root = 3', /root must be a string/],
    ['this is not toml', /not valid TOML/],
    ['[network]\ndefault_subnet = "10.88.0.0"', /network\.default_subnet: "10\.88\.0\.0" is not a subnet/],
    ['[network]\ndefault_bridge = "a-bridge-name-too-long"', /network\.default_bridge must be a Linux interface name/],
    ['[network]\nplugin_timeout = 0', /network\.plugin_timeout must be an integer from 1 to 600/],
    ['[network]\nnetns_pool = 65', /network\.netns_pool must be an integer from 0 to 64/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseConfigText(text), (err: Error) => err instanceof ConfigError && re.test(err.message), text);
});

test('[streaming]: address, port, TLS files and idle timeout; TLS files go together', () => {
  assert.deepEqual(defaultConfig().streaming, { address: '127.0.0.1', port: 0, idleTimeout: 14400 });
  const cfg = parseConfigText(`
[streaming]
address = "0.0.0.0"
port = 10010
tls_cert = "/etc/berth/stream.crt"
tls_key = "/etc/berth/stream.key"
idle_timeout = 600
`);
  assert.deepEqual(cfg.streaming, { address: '0.0.0.0', port: 10010, tlsCert: '/etc/berth/stream.crt', tlsKey: '/etc/berth/stream.key', idleTimeout: 600 });
  const cases: Array<[string, RegExp]> = [
    ['[streaming]\naddress = "localhost"', /streaming\.address must be an IP address/],
    ['[streaming]\nport = 70000', /streaming\.port must be an integer from 0 to 65535/],
    ['[streaming]\ntls_cert = "/x"', /tls_cert and streaming\.tls_key go together/],
    ['[streaming]\nidle_timeout = -1', /streaming\.idle_timeout must be an integer/],
    ['[streaming]\nidle = 1', /unknown config key streaming\.idle/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseConfigText(text), (err: Error) => err instanceof ConfigError && re.test(err.message), text);
});

test('[node]: systemd-run and berth-install command lines, switch deadline', () => {
  assert.deepEqual(defaultConfig().node, {
    systemdRun: ['systemd-run'],
    installCommand: ['/opt/berth/current/bin/node', '/opt/berth/current/lib/berth-install.js'],
    switchTimeoutSeconds: 600,
  });
  const cfg = parseConfigText('[node]\nsystemd_run = ["/bin/sh", "/tmp/rec.sh"]\ninstall_command = ["berth-install"]\nswitch_timeout = 30\n');
  assert.deepEqual(cfg.node, { systemdRun: ['/bin/sh', '/tmp/rec.sh'], installCommand: ['berth-install'], switchTimeoutSeconds: 30 });
  for (const [text, msg] of [
    ['[node]\nsystemd_run = []', /node\.systemd_run must name a program/],
    ['[node]\ninstall_command = [""]', /node\.install_command must name a program/],
    ['[node]\nswitch_timeout = 0', /node\.switch_timeout must be an integer/],
    ['[node]\nsystemd_run = "systemd-run"', /node\.systemd_run/],
    ['[node]\ntimeout = 1', /unknown config key node\.timeout/],
  ] as const) {
    assert.throws(() => parseConfigText(text), (err: unknown) => err instanceof ConfigError && msg.test(err.message), text);
  }
});

test('[p2p]: off by default; listen, static peers and the peer deadline; addresses must be IP:PORT', () => {
  assert.equal(defaultConfig().p2p.listen, undefined);
  const c = parseConfigText('[p2p]\nlisten = "0.0.0.0:5050"\npeers = ["10.0.0.7:5050", "[fd00::7]:5050"]\npeer_timeout_ms = 500\n');
  assert.deepEqual(c.p2p, { listen: { host: '0.0.0.0', port: 5050 }, peers: ['10.0.0.7:5050', '[fd00::7]:5050'], peerTimeoutMs: 500 });
  assert.equal(parseConfigText('[p2p]\nlisten = ""\n').p2p.listen, undefined);
  for (const [toml, msg] of [
    ['[p2p]\nlisten = "0.0.0.0"\n', /p2p.listen: peer "0.0.0.0" is not IP:PORT/],
    ['[p2p]\nlisten = "node-a:5050"\n', /p2p.listen: .* is not IP:PORT/],
    ['[p2p]\nlisten = "[::]:5050"\npeers = ["10.0.0.7"]\n', /p2p.peers: peer "10.0.0.7" is not IP:PORT/],
    ['[p2p]\npeer_timeout_ms = 0\n', /p2p.peer_timeout_ms must be an integer/],
    ['[p2p]\nlisten_addr = "0.0.0.0:5050"\n', /unknown config key p2p.listen_addr/],
  ] as const) {
    assert.throws(() => parseConfigText(toml), (err: Error) => err instanceof ConfigError && msg.test(err.message), toml);
  }
});
