with source as (
    select * from {{ source('greenery', 'promos') }}
),

renamed as (
    select
        promo_id,
        discount,
        status as promo_status,
        status = 'active' as is_active
    from source
)

select * from renamed
