//! Amounts in US dollars. Costs are sums of products of token counts and list prices,
//! and binary floating point leaves noise in them (`0.09871200000000001`); every sum
//! the daemon keeps or shows is rounded to a ten-billionth of a dollar, far below any
//! price, so it reads as the decimal it is.

/// `usd` rounded to a ten-billionth of a dollar.
pub fn round(usd: f64) -> f64 {
    if !usd.is_finite() {
        return usd;
    }
    (usd * 1e10).round() / 1e10
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_read_as_the_decimals_they_are() {
        assert_eq!(super::round(0.09871200000000001).to_string(), "0.098712");
        assert_eq!(super::round(0.0809 - 0.05).to_string(), "0.0309");
        assert_eq!(super::round(0.1 + 0.2).to_string(), "0.3");
        assert_eq!(super::round(1.8), 1.8);
        assert_eq!(super::round(0.0), 0.0);
    }
}
