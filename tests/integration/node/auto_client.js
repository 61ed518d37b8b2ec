// Queries, parameterized queries (extended protocol, named statements) and a transaction
// through pglane's auto port with node-postgres; prints one JSON object for the test.
const { Client } = require('pg');

async function main() {
  const client = new Client({
    host: '127.0.0.1', port: Number(process.env.PGLANE_AUTO_PORT),
    user: 'postgres', password: 'postgres', database: 'postgres',
  });
  await client.connect();
  const out = { reads: [], params: [], named: [], tx: [] };
  for (let i = 0; i < 6; i++) {
    const r = await client.query("SELECT current_setting('cluster_name') AS node");
    out.reads.push(r.rows[0].node);
  }
  for (let i = 0; i < 6; i++) {
    const r = await client.query("SELECT $1::int * 2 AS n, current_setting('cluster_name') AS node", [i]);
    out.params.push([r.rows[0].n, r.rows[0].node]);
  }
  for (let i = 0; i < 6; i++) {
    const r = await client.query({ name: 'ac_named', text: "SELECT $1::text || '?' AS s, current_setting('cluster_name') AS node", values: [String(i)] });
    out.named.push([r.rows[0].s, r.rows[0].node]);
  }
  await client.query('BEGIN');
  const ins = await client.query("INSERT INTO ac_node (v) VALUES ($1) RETURNING id, current_setting('cluster_name') AS node", ['from node']);
  out.tx.push(ins.rows[0].node);
  const sel = await client.query("SELECT v, current_setting('cluster_name') AS node FROM ac_node WHERE id = $1", [ins.rows[0].id]);
  out.tx.push(sel.rows[0].node);
  await client.query('COMMIT');
  out.committed_id = ins.rows[0].id;
  out.committed_v = sel.rows[0].v;
  await client.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
