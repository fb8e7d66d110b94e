//! `detente bench`.
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
