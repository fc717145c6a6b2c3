//! Shamir's secret sharing over GF(2^8) as sops uses it (HashiCorp Vault's scheme): a share is one byte per
//! secret byte, followed by its x-coordinate.

/// Multiplication in GF(2^8) modulo the AES polynomial x^8 + x^4 + x^3 + x + 1.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        let carry = a & 0x80;
        a <<= 1;
        if carry != 0 {
            a ^= 0x1B;
        }
        b >>= 1;
    }
    product
}

/// The multiplicative inverse (a^254); 0 has none and maps to 0.
fn inverse(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut exponent = 254u8;
    while exponent != 0 {
        if exponent & 1 != 0 {
            result = mul(result, base);
        }
        base = mul(base, base);
        exponent >>= 1;
    }
    result
}

/// The secret from at least the threshold of shares, by Lagrange interpolation at 0; `None` if the shares differ in
/// length, are too short, or repeat an x-coordinate.
pub(crate) fn combine(shares: &[&[u8]]) -> Option<Vec<u8>> {
    let len = shares.first()?.len();
    if len < 2 || shares.iter().any(|s| s.len() != len) {
        return None;
    }
    let xs: Vec<u8> = shares.iter().map(|s| s[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return None;
        }
    }
    let mut secret = vec![0u8; len - 1];
    for (j, share) in shares.iter().enumerate() {
        // The basis polynomial at 0: Π x_m / (x_m - x_j), subtraction being XOR.
        let mut basis = 1u8;
        for (m, xm) in xs.iter().enumerate() {
            if m != j {
                basis = mul(basis, mul(*xm, inverse(xm ^ xs[j])));
            }
        }
        for (byte, y) in secret.iter_mut().zip(&share[..len - 1]) {
            *byte ^= mul(*y, basis);
        }
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic() {
        assert_eq!(mul(0x53, 0xCA), 0x01, "the AES field's textbook inverse pair");
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1);
        }
    }

    #[test]
    fn two_of_three_shares_recover_the_secret() {
        // f(x) = s + 7x per byte; shares at x = 1, 2, 3.
        let secret = [0x42u8, 0x13, 0xFF];
        let share = |x: u8| -> Vec<u8> { secret.iter().map(|s| s ^ mul(7, x)).chain([x]).collect() };
        let (a, b, c) = (share(1), share(2), share(3));
        assert_eq!(combine(&[&a, &b]).unwrap(), secret);
        assert_eq!(combine(&[&c, &a]).unwrap(), secret);
        assert!(combine(&[&a, &a]).is_none(), "a repeated x");
    }
}
