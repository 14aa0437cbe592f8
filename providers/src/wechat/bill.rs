//! The trade bill [PAYMENTS.md §1.10]: a detail header, one row per payment or refund
//! (every value prefixed with a backtick, amounts in yuan), a summary header and a
//! summary row; gzipped, with the SHA1 of the plain file. The sandbox renders it, the
//! adapter checks and parses it into [`BillLine`]s with our order ids.

use super::callback::split_refund_no;
use super::clock::{bill_time, parse_bill_time};
use super::sandbox::{Book, RefundRecord};
use crate::keys::WechatMerchant;
use crate::money::{parse_yuan, yuan};
use crate::refs::{order_id_of, out_order_no};
use crate::sandbox::Charge;
use tare_domain::Cents;
use tare_sagas::ports::{BillLine, BillLineKind};

/// The ALL bill's columns.
pub const COLUMNS: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

/// The summary's columns.
pub const SUMMARY: &str = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// Why a bill could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// Not the bill layout.
    #[error("bill: {0}")]
    Format(String),
}

fn row(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("`{}", v.replace([',', '`', '\n', '\r'], " ")))
        .collect::<Vec<_>>()
        .join(",")
}

fn y(fen: i64) -> String {
    yuan(Cents::new(fen))
}

/// Renders a day's bill from the sandbox's ledger (charges by payment time, refunds by
/// acceptance time).
pub(super) fn render_bill(m: &WechatMerchant, book: &Book, charges: &[Charge], refunds: &[&RefundRecord]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    let (mut total, mut refunded) = (0i64, 0i64);
    for c in charges {
        let no = out_order_no(&c.order_id);
        let order = book.orders.get(&no);
        let openid = order.and_then(|o| o.view.openid.clone()).unwrap_or_default();
        let name = order.map(|o| o.view.service_introduction.clone()).unwrap_or_default();
        let fen = c.amount.get();
        total += fen;
        let cells = [
            bill_time(c.at),
            m.appid.clone(),
            m.mchid.clone(),
            "0".into(),
            String::new(),
            c.transaction_id.clone(),
            no,
            openid,
            "PAYSCORE".into(),
            "SUCCESS".into(),
            "OTHERS".into(),
            "CNY".into(),
            y(fen),
            y(0),
            "0".into(),
            "0".into(),
            y(0),
            y(0),
            String::new(),
            String::new(),
            name,
            String::new(),
            y(0),
            "0.60%".into(),
            y(fen),
            y(0),
            String::new(),
        ];
        out.push_str(&row(&cells));
        out.push('\n');
    }
    for r in refunds {
        let v = &r.view;
        refunded += v.amount.refund;
        let cells = [
            bill_time(r.at),
            m.appid.clone(),
            m.mchid.clone(),
            "0".into(),
            String::new(),
            v.transaction_id.clone(),
            r.out_order_no.clone(),
            String::new(),
            "PAYSCORE".into(),
            "REFUND".into(),
            "OTHERS".into(),
            "CNY".into(),
            y(v.amount.total),
            y(0),
            v.refund_id.clone(),
            v.out_refund_no.clone(),
            y(v.amount.refund),
            y(0),
            v.channel.clone(),
            v.status.clone(),
            String::new(),
            String::new(),
            y(0),
            "0.60%".into(),
            y(v.amount.total),
            y(v.amount.refund),
            String::new(),
        ];
        out.push_str(&row(&cells));
        out.push('\n');
    }
    out.push_str(SUMMARY);
    out.push('\n');
    let count = (charges.len() + refunds.len()).to_string();
    out.push_str(&row(&[count, y(total), y(refunded), y(0), y(0), y(total), y(refunded)]));
    out.push('\n');
    out
}

/// Reads a bill's detail rows as charges and refunds with our order and refund ids.
pub fn parse_bill(text: &str) -> Result<Vec<BillLine>, BillError> {
    let fail = |why: &str| BillError::Format(why.to_string());
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or_else(|| fail("empty"))?.split(',').map(str::trim).collect();
    let col = |name: &str| header.iter().position(|h| *h == name).ok_or_else(|| fail(name));
    let (time, tx, order, status) = (col("交易时间")?, col("微信订单号")?, col("商户订单号")?, col("交易状态")?);
    let (settled, refund_no, refund_amount) = (col("应结订单金额")?, col("商户退款单号")?, col("退款金额")?);
    let mut out = Vec::new();
    for line in lines {
        if line.starts_with("总交易单数") {
            return Ok(out);
        }
        let cells: Vec<&str> = line.split(',').map(|c| c.strip_prefix('`').unwrap_or(c)).collect();
        if cells.len() != header.len() {
            return Err(fail("a row has the wrong number of columns"));
        }
        let at = parse_bill_time(cells[time]).ok_or_else(|| fail("交易时间"))?;
        let money = |i: usize| parse_yuan(cells[i]).map_err(|e| BillError::Format(e.to_string()));
        let (kind, amount) = match cells[status] {
            "SUCCESS" => (BillLineKind::Charge, money(settled)?),
            "REFUND" => (
                BillLineKind::Refund {
                    refund_id: split_refund_no(cells[refund_no]).1,
                },
                money(refund_amount)?,
            ),
            other => return Err(BillError::Format(format!("交易状态 {other}"))),
        };
        out.push(BillLine {
            order_id: order_id_of(cells[order]),
            transaction_id: cells[tx].to_string(),
            kind,
            amount,
            at,
        });
    }
    Err(fail("no summary"))
}

/// SHA-1 of `data` as lowercase hex (the bill's `hash_value`; the crate has no SHA-1
/// dependency, and this is an integrity check, not a security one).
pub fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(v);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn a_bill_without_summary_or_with_bad_amounts_is_refused() {
        let header = COLUMNS.join(",");
        assert!(parse_bill("").is_err());
        assert!(parse_bill(&format!("{header}\n")).is_err());
        assert_eq!(parse_bill(&format!("{header}\n{SUMMARY}\n`0")), Ok(vec![]));
        let mut cells: Vec<String> = vec![String::new(); 27];
        cells[0] = "2026-12-02 00:30:00".into();
        cells[9] = "SUCCESS".into();
        cells[12] = "0.1".into();
        assert!(parse_bill(&format!("{header}\n{}\n{SUMMARY}\n", row(&cells))).is_err());
        cells[12] = "0.10".into();
        let lines = parse_bill(&format!("{header}\n{}\n{SUMMARY}\n", row(&cells))).unwrap();
        assert_eq!(lines[0].amount, Cents::new(10));
    }
}
