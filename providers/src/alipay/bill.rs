//! Alipay's daily trade bill [PAYMENTS.md §2.5]: a zip holding two **GBK** CSV files,
//! the detail (`…_业务明细.csv`) and the summary (`…_业务明细(汇总).csv`). The detail
//! has `#` comment lines (title, account, period), a column row, one row per trade or
//! refund (values padded with a tab, as Alipay writes them so spreadsheets keep the long
//! numbers as text), an end marker and the totals. The sandbox writes it; the adapter
//! reads it back by column name (so extra or reordered columns do not break it).

use super::sign::{china_datetime, parse_china_datetime};
use crate::money::{parse_yuan, yuan};
use crate::refs::order_id_of;
use std::io::{Cursor, Read, Write};
use tare_domain::{Cents, UnixMs};
use tare_sagas::ports::{BillLine, BillLineKind};

/// Why a bill could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// Not a zip, or a damaged one.
    #[error("bill archive: {0}")]
    Archive(String),
    /// No detail file in the archive.
    #[error("bill archive has no detail file")]
    NoDetail,
    /// A row that cannot be read.
    #[error("bill row {line}: {reason}")]
    Row {
        /// 1-based line number in the detail file.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// What a bill row records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillRowKind {
    /// A payment (`交易`).
    Charge,
    /// A refund (`退款`) with its `out_request_no`.
    Refund {
        /// The refund's `out_request_no`.
        out_request_no: String,
    },
}

/// One row of the detail file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRow {
    /// 支付宝交易号.
    pub trade_no: String,
    /// 商户订单号.
    pub out_trade_no: String,
    /// 商品名称.
    pub subject: String,
    /// 业务类型.
    pub kind: BillRowKind,
    /// The amount (positive; a refund is written negative in 商家实收).
    pub amount: Cents,
    /// 创建时间.
    pub created: UnixMs,
    /// 完成时间.
    pub at: UnixMs,
}

const COLUMNS: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

/// `2026年12月02日 00:00:00`.
fn chinese_day(date: &str) -> String {
    let mut p = date.split('-');
    let (y, m, d) = (p.next().unwrap_or(""), p.next().unwrap_or(""), p.next().unwrap_or(""));
    format!("{y}年{m}月{d}日")
}

/// The detail CSV (as text, before GBK encoding).
fn detail_csv(account: &str, date: &str, rows: &[&BillRow], now: UnixMs) -> String {
    let mut s = String::new();
    s.push_str("#支付宝业务明细查询\r\n");
    s.push_str(&format!("#账号：[{account}0156]\r\n"));
    s.push_str(&format!(
        "#起始日期：[{} 00:00:00]   终止日期：[{} 23:59:59]\r\n",
        chinese_day(date),
        chinese_day(date)
    ));
    s.push_str("#-----------------------------------------业务明细列表----------------------------------------\r\n");
    s.push_str(&COLUMNS.join(","));
    s.push_str("\r\n");
    let (mut charges, mut charged, mut refunds, mut refunded) = (0, Cents::ZERO, 0, Cents::ZERO);
    for r in rows {
        let (kind, received, request_no) = match &r.kind {
            BillRowKind::Charge => {
                charges += 1;
                charged = charged + r.amount;
                ("交易", yuan(r.amount), String::new())
            }
            BillRowKind::Refund { out_request_no } => {
                refunds += 1;
                refunded = refunded + r.amount;
                ("退款", format!("-{}", yuan(r.amount)), out_request_no.clone())
            }
        };
        let subject = r.subject.replace([',', '\r', '\n'], " ");
        let values = [
            r.trade_no.as_str(),
            &r.out_trade_no,
            kind,
            &subject,
            &china_datetime(r.created),
            &china_datetime(r.at),
            "",
            "",
            "",
            "",
            "",
            &received,
            &received,
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "",
            "0.00",
            "0.00",
            &request_no,
            "0.00",
            "0.00",
            "",
        ];
        let line: Vec<String> = values.iter().map(|v| format!("{v}\t")).collect();
        s.push_str(&line.join(","));
        s.push_str("\r\n");
    }
    s.push_str("#-----------------------------------------业务明细列表结束------------------------------------\r\n");
    s.push_str(&format!(
        "#交易合计：{charges}笔，商家实收共：{}元，商家优惠共：0.00元\r\n",
        yuan(charged)
    ));
    s.push_str(&format!(
        "#退款合计：{refunds}笔，商家实收退款共：-{}元，商家优惠退款共：0.00元\r\n",
        yuan(refunded)
    ));
    s.push_str(&format!("#导出时间：[{}]\r\n", china_datetime(now)));
    s
}

/// The summary CSV.
fn summary_csv(account: &str, date: &str, rows: &[&BillRow], now: UnixMs) -> String {
    let charges: Vec<_> = rows.iter().filter(|r| r.kind == BillRowKind::Charge).collect();
    let charged: Cents = charges.iter().map(|r| r.amount).sum();
    let refunded: Cents = rows.iter().filter(|r| r.kind != BillRowKind::Charge).map(|r| r.amount).sum();
    format!(
        "#支付宝业务汇总查询\r\n#账号：[{account}0156]\r\n#起始日期：[{d} 00:00:00]   终止日期：[{d} 23:59:59]\r\n\
         门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,退款金额（元）\r\n\
         合计,,{},{},{},{},-{}\r\n#导出时间：[{}]\r\n",
        charges.len(),
        rows.len() - charges.len(),
        yuan(charged),
        yuan(charged),
        yuan(refunded),
        china_datetime(now),
        d = chinese_day(date),
    )
}

/// The zip of a day's bill (`date` `YYYY-MM-DD`), both files GBK.
pub fn render(account: &str, date: &str, rows: &[&BillRow], now: UnixMs) -> Result<Vec<u8>, BillError> {
    let archive_err = |e: &dyn std::fmt::Display| BillError::Archive(e.to_string());
    let compact = date.replace('-', "");
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let files = [
        (
            format!("{account}0156_{compact}_业务明细.csv"),
            detail_csv(account, date, rows, now),
        ),
        (
            format!("{account}0156_{compact}_业务明细(汇总).csv"),
            summary_csv(account, date, rows, now),
        ),
    ];
    for (name, text) in files {
        let (gbk, _, _) = encoding_rs::GBK.encode(&text);
        zip.start_file(name, options).map_err(|e| archive_err(&e))?;
        zip.write_all(&gbk).map_err(|e| archive_err(&e))?;
    }
    Ok(zip.finish().map_err(|e| archive_err(&e))?.into_inner())
}

/// Reads a bill zip into bill lines with our order ids (and refund ids).
pub fn parse(zip_bytes: &[u8]) -> Result<Vec<BillLine>, BillError> {
    let archive_err = |e: &dyn std::fmt::Display| BillError::Archive(e.to_string());
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|e| archive_err(&e))?;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| archive_err(&e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| archive_err(&e))?;
        let (text, _, malformed) = encoding_rs::GBK.decode(&bytes);
        if malformed {
            return Err(BillError::Archive("not GBK".into()));
        }
        if text.lines().any(|l| l.starts_with(COLUMNS[0])) {
            return parse_detail(&text);
        }
    }
    Err(BillError::NoDetail)
}

/// The rows of a detail file, found by column name.
fn parse_detail(text: &str) -> Result<Vec<BillLine>, BillError> {
    let mut columns: Option<Vec<String>> = None;
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cells: Vec<String> = line.split(',').map(|c| c.trim().to_string()).collect();
        let Some(cols) = &columns else {
            columns = Some(cells);
            continue;
        };
        let row_err = |reason: String| BillError::Row { line: n + 1, reason };
        let get = |name: &str| -> Result<&str, BillError> {
            let i = cols
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| row_err(format!("no column {name}")))?;
            Ok(cells.get(i).map(String::as_str).unwrap_or(""))
        };
        let received = get("商家实收（元）")?;
        let amount = parse_yuan(received.trim_start_matches('-')).map_err(|e| row_err(e.to_string()))?;
        let at = parse_china_datetime(get("完成时间")?).ok_or_else(|| row_err("bad 完成时间".into()))?;
        let kind = match get("业务类型")? {
            "交易" => BillLineKind::Charge,
            "退款" => BillLineKind::Refund {
                refund_id: order_id_of(get("退款批次号/请求号")?),
            },
            other => return Err(row_err(format!("unknown 业务类型 {other}"))),
        };
        lines.push(BillLine {
            order_id: order_id_of(get("商户订单号")?),
            transaction_id: get("支付宝交易号")?.to_string(),
            kind,
            amount,
            at,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bill_round_trips_through_gbk_and_zip() {
        let charge = BillRow {
            trade_no: "2026120222001000000000000001".into(),
            out_trade_no: "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b".into(),
            subject: "可乐, 2 瓶".into(),
            kind: BillRowKind::Charge,
            amount: Cents::new(350),
            created: 1_796_142_600_000,
            at: 1_796_142_605_000,
        };
        let refund = BillRow {
            kind: BillRowKind::Refund {
                out_request_no: "r1".into(),
            },
            amount: Cents::new(50),
            at: 1_796_142_700_000,
            ..charge.clone()
        };
        let zip = render("2088000000000001", "2026-12-02", &[&charge, &refund], 1_796_142_800_000).unwrap();
        let lines = parse(&zip).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].order_id, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(lines[0].kind, BillLineKind::Charge);
        assert_eq!(lines[0].amount, Cents::new(350));
        assert_eq!(lines[0].at, 1_796_142_605_000);
        assert_eq!(lines[1].kind, BillLineKind::Refund { refund_id: "r1".into() });
        assert_eq!(lines[1].amount, Cents::new(50));
        // Really GBK: the raw detail file is not UTF-8.
        let mut archive = zip::ZipArchive::new(Cursor::new(&zip[..])).unwrap();
        let mut raw = Vec::new();
        archive.by_index(0).unwrap().read_to_end(&mut raw).unwrap();
        assert!(std::str::from_utf8(&raw).is_err());
        assert!(parse(b"not a zip").is_err());
    }
}
