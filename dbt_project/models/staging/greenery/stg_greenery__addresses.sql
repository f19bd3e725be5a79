with source as (
    select * from {{ source('greenery', 'addresses') }}
),

renamed as (
    select
        address_id,
        address,
        -- Upstream stores zip codes as integers; restore the leading zeros it lost.
        lpad(cast(zipcode as varchar), 5, '0') as zipcode,
        state,
        country
    from source
)

select * from renamed
